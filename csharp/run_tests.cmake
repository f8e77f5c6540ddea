# run_tests.cmake - the csharp_tests CTest test: restore the tests project
# offline (HpSock from this build's feed), run dotnet test, and fail when a
# test failed or when no test ran at all.
#
# Inputs (-D): DOTNET PROJECT ARTIFACTS NUGET_CONFIG PACKAGES VERSION RESULTS
foreach(v DOTNET PROJECT ARTIFACTS NUGET_CONFIG PACKAGES VERSION RESULTS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_tests.cmake: -D${v}= is required")
  endif()
endforeach()

set(flags --disable-build-servers -nologo -p:UseSharedCompilation=false
  -p:HpSockVersion=${VERSION} -p:RestoreConfigFile=${NUGET_CONFIG}
  -p:RestorePackagesPath=${PACKAGES} --artifacts-path ${ARTIFACTS})

file(REMOVE_RECURSE ${RESULTS})
execute_process(
  COMMAND ${DOTNET} restore ${PROJECT} --force ${flags}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "dotnet restore failed (${rc})")
endif()

execute_process(
  COMMAND ${DOTNET} test ${PROJECT} --no-restore -c Release ${flags}
    --logger "trx;LogFileName=results.trx" --logger "console;verbosity=normal"
    --results-directory ${RESULTS}
  RESULT_VARIABLE rc)

# Leave no build server behind, whatever happened.
execute_process(COMMAND ${DOTNET} build-server shutdown
  OUTPUT_QUIET ERROR_QUIET)

set(trx ${RESULTS}/results.trx)
if(NOT EXISTS ${trx})
  message(FATAL_ERROR "dotnet test wrote no results (exit ${rc}): no test ran")
endif()
file(READ ${trx} xml)
string(REGEX MATCH "<Counters [^>]*>" counters "${xml}")
foreach(k total executed passed failed)
  string(REGEX MATCH " ${k}=\"([0-9]+)\"" _ "${counters}")
  set(${k} "${CMAKE_MATCH_1}")
  if("${${k}}" STREQUAL "")
    set(${k} 0)
  endif()
endforeach()
math(EXPR notpassed "${total} - ${passed} - ${failed}")
message(STATUS "csharp: ${passed} passed, ${failed} failed, ${notpassed} skipped")
# The plain closing line CI reads.
execute_process(COMMAND ${CMAKE_COMMAND} -E echo "csharp: ${passed} passed, ${failed} failed")
if(NOT rc EQUAL 0 OR failed GREATER 0)
  message(FATAL_ERROR "csharp tests failed (exit ${rc}, ${failed} failed)")
endif()
if(executed EQUAL 0 OR passed EQUAL 0)
  message(FATAL_ERROR "csharp tests: no test ran")
endif()
