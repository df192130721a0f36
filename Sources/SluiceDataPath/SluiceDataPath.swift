// SluiceDataPath
