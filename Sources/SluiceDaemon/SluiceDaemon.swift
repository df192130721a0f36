// SluiceDaemon
