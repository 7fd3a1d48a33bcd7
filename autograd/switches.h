// Switches that keep a former implementation reachable while its replacement is unmeasured on a
// GPU (docs/gpu.md lists them): read once per process from the environment.
#pragma once

namespace vq {

// Whether switch `name` is on: `default_on` when the variable is unset, else any value but "0".
bool env_switch(const char* name, bool default_on);

}  // namespace vq
