# install_consumer: stage an install of the build, then build and run
# tests/consumer against it twice: with CMake (find_package(hpsock CONFIG)),
# and with a plain `cc $(pkg-config --cflags --libs hpsock)`.
#   cmake -DBUILD_DIR=<build> -DSRC_DIR=<tests/consumer> -DWORK_DIR=<scratch>
#         -P run.cmake
foreach(_v BUILD_DIR SRC_DIR WORK_DIR)
  if(NOT ${_v})
    message(FATAL_ERROR "run.cmake: -D${_v}=... is required")
  endif()
endforeach()

set(PREFIX ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

# The build's compiler and sanitizer: a consumer of a sanitized library must
# be built with the same runtime.
set(_cc "")
set(_sanitize "")
if(EXISTS ${BUILD_DIR}/CMakeCache.txt)
  file(STRINGS ${BUILD_DIR}/CMakeCache.txt _l REGEX "^CMAKE_C_COMPILER:")
  if(_l MATCHES "=(.+)$")
    set(_cc "${CMAKE_MATCH_1}")
  endif()
  file(STRINGS ${BUILD_DIR}/CMakeCache.txt _l REGEX "^HPS_SANITIZE:")
  if(_l MATCHES "=(.+)$")
    set(_sanitize "${CMAKE_MATCH_1}")
  endif()
endif()
if(NOT _cc)
  set(_cc cc)
endif()
set(_flags "")
if(_sanitize STREQUAL "address")
  set(_flags -fsanitize=address,undefined)
elseif(_sanitize STREQUAL "thread")
  set(_flags -fsanitize=thread)
endif()
string(REPLACE ";" " " _flags_str "${_flags}")

function(run_step what)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "install_consumer: ${what} failed (${_rc})\n"
      "command: ${ARGN}\nstdout:\n${_out}\nstderr:\n${_err}")
  endif()
  set(STEP_OUT "${_out}" PARENT_SCOPE)
endfunction()

# The version the installed header promises.
function(expect_version out)
  file(STRINGS ${PREFIX}/include/hpsock.h _vl
    REGEX "#define HPS_VERSION_(MAJOR|MINOR|PATCH) ")
  foreach(_x ${_vl})
    string(REGEX MATCH "HPS_VERSION_([A-Z]+) ([0-9]+)" _m "${_x}")
    set(_v_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
  endforeach()
  set(${out} "hpsock ${_v_MAJOR}.${_v_MINOR}.${_v_PATCH}" PARENT_SCOPE)
endfunction()

# 1. Stage the install.
run_step("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR}
  --prefix ${PREFIX})
foreach(_f include/hpsock.h lib/pkgconfig/hpsock.pc
    lib/cmake/hpsock/hpsockConfig.cmake)
  if(NOT EXISTS ${PREFIX}/${_f})
    message(FATAL_ERROR "install_consumer: ${PREFIX}/${_f} was not installed")
  endif()
endforeach()
expect_version(_want)
set(_env ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${PREFIX}/lib)

# 2. CMake consumer: find_package(hpsock CONFIG) + hpsock::hpsock.
run_step("configure the CMake consumer" ${CMAKE_COMMAND}
  -S ${SRC_DIR} -B ${WORK_DIR}/cmake-build
  -DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_C_COMPILER=${_cc}
  "-DCMAKE_C_FLAGS=${_flags_str}"
  "-DCMAKE_EXE_LINKER_FLAGS=${_flags_str}")
run_step("build the CMake consumer" ${CMAKE_COMMAND}
  --build ${WORK_DIR}/cmake-build)
run_step("run the CMake consumer" ${_env} ${WORK_DIR}/cmake-build/consumer)
string(STRIP "${STEP_OUT}" _got)
if(NOT _got STREQUAL _want)
  message(FATAL_ERROR "install_consumer: CMake consumer printed '${_got}', "
    "expected '${_want}'")
endif()

# 3. pkg-config consumer: cc main.c $(pkg-config --cflags --libs hpsock).
find_program(PKG_CONFIG_EXE NAMES pkg-config pkgconf REQUIRED)
set(ENV{PKG_CONFIG_PATH} ${PREFIX}/lib/pkgconfig)
run_step("pkg-config --cflags --libs hpsock" ${PKG_CONFIG_EXE}
  --cflags --libs hpsock)
string(STRIP "${STEP_OUT}" _pc)
separate_arguments(_pc_args UNIX_COMMAND "${_pc}")
run_step("compile with pkg-config flags" ${_cc} ${_flags}
  ${SRC_DIR}/main.c ${_pc_args} -o ${WORK_DIR}/consumer-pc)
run_step("run the pkg-config consumer" ${_env} ${WORK_DIR}/consumer-pc)
string(STRIP "${STEP_OUT}" _got)
if(NOT _got STREQUAL _want)
  message(FATAL_ERROR "install_consumer: pkg-config consumer printed "
    "'${_got}', expected '${_want}'")
endif()
message(STATUS "install_consumer: CMake and pkg-config consumers print "
  "'${_want}'")
