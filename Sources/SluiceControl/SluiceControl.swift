// SluiceControl
