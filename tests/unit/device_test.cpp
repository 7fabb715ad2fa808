// The --device flag and the GPU factory as a binary without a usable GPU sees them.
#include <gtest/gtest.h>

#include <string>

#include "csrc/model/device.h"
#include "csrc/util/error.h"

namespace jarvis {
namespace {

TEST(Device, ParsesCpuAndCuda) {
  EXPECT_FALSE(parse_device("cpu").is_cuda());
  EXPECT_TRUE(parse_device("cuda").is_cuda());
  EXPECT_EQ(parse_device("cuda").index, 0);
  EXPECT_EQ(parse_device("cuda:3").index, 3);
  EXPECT_EQ(parse_device("cuda:3").str(), "cuda:3");
  EXPECT_EQ(parse_device("cpu").str(), "cpu");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1.5", "CPU", "cuda:99999"}) {
    EXPECT_THROW(parse_device(bad), InvalidArgument) << bad;
  }
}

TEST(Device, ParsesGpuDtypes) {
  EXPECT_EQ(parse_gpu_dtype("f16"), GpuDType::kF16);
  EXPECT_EQ(parse_gpu_dtype("bf16"), GpuDType::kBF16);
  EXPECT_EQ(parse_gpu_dtype("f32"), GpuDType::kF32);
  EXPECT_STREQ(gpu_dtype_name(GpuDType::kBF16), "bf16");
  EXPECT_THROW(parse_gpu_dtype("int8"), InvalidArgument);
}

// Whatever the build, asking for a GPU that cannot be used is an error that says why, before any
// model is loaded: no CUDA backend compiled in, no driver/device, or a device index out of range.
TEST(Device, UnusableGpuIsAClearError) {
  const int index = cuda_backend_built() ? 9999 : 0;  // no machine has 10000 GPUs
  try {
    check_cuda_device(index);
    ADD_FAILURE() << "cuda:" << index << " accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cuda:" + std::to_string(index)), std::string::npos) << what;
    if (!cuda_backend_built()) {
      EXPECT_NE(what.find("without the CUDA backend"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace jarvis
