// The API conformance suite runs once per backend: `api_tests --backend=kernel` and
// `api_tests --backend=ustack`. The cases assert Linux's behaviour; the kernel run proves each
// case right, the ustack run proves ustack matches. The ustack run needs no DPDK: its engine sits
// on an in-memory port and the cases talk over 127.0.0.1, which ustack serves internally.

#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "api/engine.h"
#include "api_test.h"
#include "dev/memory_wire.h"
#include "ustack/ustack.h"

namespace ustack::api {
void init_user_backend_for_test(std::unique_ptr<Engine> engine);
}

namespace ustack::apitest {
Backend g_backend = Backend::kKernel;
}

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  using namespace ustack;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--backend=ustack") == 0) apitest::g_backend = Backend::kUstack;
  }
  static ManualClock wire_clock;  // frames to the (absent) peer are kept, never delivered
  if (apitest::g_backend == Backend::kUstack) {
    api::EngineConfig config;
    config.stack.seed = 42;
    config.idle_spin = 50us;
    config.idle_sleep_max = 200us;
    auto port = std::make_unique<dev::MemoryPort>(wire_clock, dev::test_caps(2), "api test port");
    api::init_user_backend_for_test(std::make_unique<api::Engine>(config, std::move(port), nullptr));
  } else {
    InitOptions options;
    options.backend = Backend::kKernel;
    if (init(options) != 0) return 2;
  }
  std::printf("API suite on the %s backend\n", backend_name(apitest::g_backend));
  return RUN_ALL_TESTS();
}
