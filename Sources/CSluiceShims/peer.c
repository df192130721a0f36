#include "sluice_peer.h"
