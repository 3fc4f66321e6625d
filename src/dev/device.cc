#include "dev/device.h"

#include <thread>

namespace ustack::dev {

void Device::wait_rx(Duration max) {
  if (max > Duration::zero()) std::this_thread::sleep_for(max);
}

}  // namespace ustack::dev
