# CUDA: built whenever nvcc is found (VMOE_CUDA=AUTO, the default), forced with ON, switched off
# with OFF. Sets VMOE_WITH_CUDA, compiles for architectures 80 and 90 (A100, H100/H200) unless
# CMAKE_CUDA_ARCHITECTURES says otherwise, and finds cuDNN and NCCL (CUDAToolkit has no targets
# for them) with their versions: VMOE_CUDNN_LIB, VMOE_NCCL_LIB, VMOE_CUDNN_VERSION,
# VMOE_NCCL_VERSION.
set(VMOE_WITH_CUDA OFF)
# The toolkit's default place, for shells whose PATH does not name it.
if(NOT VMOE_CUDA STREQUAL "OFF" AND NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX}
   AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
if(VMOE_CUDA STREQUAL "AUTO")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(VMOE_WITH_CUDA ON)
  else()
    message(STATUS "vmoe: nvcc not found, building without CUDA (VMOE_CUDA=ON makes it an error)")
  endif()
elseif(VMOE_CUDA)
  set(VMOE_WITH_CUDA ON)
endif()

if(VMOE_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_library(VMOE_CUDNN_LIB cudnn HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
  find_library(VMOE_NCCL_LIB nccl HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
  find_file(VMOE_CUDNN_VERSION_H cudnn_version.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
  find_file(VMOE_NCCL_H nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
  # "9.13.0" from the version macros of a header.
  function(vmoe_header_version out header prefix patch)
    file(STRINGS ${header} lines REGEX "#define ${prefix}(MAJOR|MINOR|${patch}) +[0-9]+")
    set(parts)
    foreach(field MAJOR MINOR ${patch})
      string(REGEX MATCH "#define ${prefix}${field} +([0-9]+)" ignored "${lines}")
      list(APPEND parts ${CMAKE_MATCH_1})
    endforeach()
    list(JOIN parts "." version)
    set(${out} ${version} PARENT_SCOPE)
  endfunction()
  vmoe_header_version(VMOE_CUDNN_VERSION ${VMOE_CUDNN_VERSION_H} CUDNN_ PATCHLEVEL)
  vmoe_header_version(VMOE_NCCL_VERSION ${VMOE_NCCL_H} NCCL_ PATCH)
  message(STATUS "vmoe: CUDA ${CMAKE_CUDA_COMPILER_VERSION} for architectures "
                 "${CMAKE_CUDA_ARCHITECTURES}; cuDNN ${VMOE_CUDNN_VERSION}, NCCL ${VMOE_NCCL_VERSION}")
endif()
list(JOIN CMAKE_CUDA_ARCHITECTURES " " VMOE_CUDA_ARCHITECTURES_TEXT)
