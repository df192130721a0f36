// SluiceModules
