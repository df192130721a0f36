/* Header-only target: the ABI lives in include/sluice/driver_plugin.h. */
#include "sluice/driver_plugin.h"
