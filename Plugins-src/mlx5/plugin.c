/* placeholder */ int sluice_plugin_mlx5_placeholder(void) { return 0; }
