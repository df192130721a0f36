#ifndef SLUICE_DRIVER_PLUGIN_H
#define SLUICE_DRIVER_PLUGIN_H
/* Placeholder; the ABI is defined by the plugin-host work (issue 4). */
#endif
