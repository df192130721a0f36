// SluiceNIC
