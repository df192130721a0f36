// SluicePluginHost
