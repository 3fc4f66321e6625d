// The API conformance suite runs once per backend: `api_tests --backend=kernel` and
// `api_tests --backend=ustack`, and on ustack once more with `--threaded` (the engine on a thread
// of its own, so the cases that need several threads run too). The cases assert Linux's
// behaviour; the kernel run proves each case right, the ustack runs prove ustack matches. The
// ustack runs need no DPDK: the engine sits on an in-memory port and the cases talk over
// 127.0.0.1, which ustack serves internally.

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
bool g_threaded = false;
}

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  using namespace ustack;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--backend=ustack") == 0) apitest::g_backend = Backend::kUstack;
    if (std::strcmp(argv[i], "--threaded") == 0) apitest::g_threaded = true;
  }
  static ManualClock wire_clock;  // frames to the (absent) peer are kept, never delivered
  if (apitest::g_backend == Backend::kUstack) {
    api::EngineConfig config;
    config.stack.seed = 42;
    config.idle_spin = 50us;
    config.idle_sleep_max = 200us;
    config.threaded = apitest::g_threaded;
    auto port = std::make_unique<dev::MemoryPort>(wire_clock, dev::test_caps(2), "api test port");
    api::init_user_backend_for_test(std::make_unique<api::Engine>(config, std::move(port), nullptr));
  } else {
    InitOptions options;
    options.backend = Backend::kKernel;
    if (init(options) != 0) return 2;
  }
  std::printf("API suite on the %s backend%s\n", backend_name(apitest::g_backend),
              apitest::g_backend == Backend::kUstack && apitest::g_threaded ? ", threaded" : "");
  return RUN_ALL_TESTS();
}
