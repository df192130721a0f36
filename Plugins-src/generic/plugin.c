/* placeholder */ int sluice_plugin_generic_placeholder(void) { return 0; }
