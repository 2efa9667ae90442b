"""How Contrail is reached: REST, gRPC and websockets. Decode, authenticate, call one service, encode."""
