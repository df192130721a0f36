/* Header-only target: the ABI lives in include/sluice/driver_plugin.h, the
 * host's size helpers in include/sluice/driver_host.h. */
#include "sluice/driver_host.h"
