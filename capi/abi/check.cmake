# Compare the shared library's exported dynamic symbols with the baseline.
# Usage: cmake -DLIB=<libhpsock.so> -DBASELINE=<symbols.txt> [-DUPDATE=1] -P check.cmake
execute_process(COMMAND nm -D --defined-only ${LIB}
  OUTPUT_VARIABLE _out RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "nm failed on ${LIB}")
endif()
string(REPLACE "\n" ";" _lines "${_out}")
set(_syms "")
foreach(_l ${_lines})
  if(_l MATCHES " [TDBR] ([A-Za-z_0-9]+)(@.*)?$")
    list(APPEND _syms "${CMAKE_MATCH_1}")
  endif()
endforeach()
list(REMOVE_DUPLICATES _syms)
list(SORT _syms)
string(REPLACE ";" "\n" _now "${_syms}")
set(_now "${_now}\n")
if(UPDATE OR NOT EXISTS ${BASELINE})
  file(WRITE ${BASELINE} "${_now}")
  message(STATUS "ABI baseline written: ${BASELINE}")
  return()
endif()
file(READ ${BASELINE} _base)
if(NOT _base STREQUAL _now)
  message(FATAL_ERROR "Exported symbols differ from ${BASELINE}.\n"
    "If the change is intended, run: cmake -DLIB=${LIB} -DBASELINE=${BASELINE} -DUPDATE=1 -P ${CMAKE_CURRENT_LIST_FILE}\n"
    "Now:\n${_now}")
endif()
