# Warnings are errors for our own code only; third-party headers come in as SYSTEM includes.
function(jarvis_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter>
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
endfunction()

# CPU kernels are tuned for the build machine unless JARVIS_NATIVE is off (portable packages).
function(jarvis_cpu_tuning target)
  if(JARVIS_NATIVE)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-O3 -fno-math-errno>)
endfunction()
