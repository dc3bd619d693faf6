# Included by the top-level CMakeLists.txt when VMOE_FUZZ=ON: every library is built with
# libFuzzer coverage and ASan + UBSan, so the fuzz targets of test/fuzz see into vmoe's code.
# clang only (libFuzzer ships with it): cmake -DVMOE_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ ...
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "VMOE_FUZZ=ON needs clang (libFuzzer), got ${CMAKE_CXX_COMPILER_ID}: "
                      "configure with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
endif()
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
