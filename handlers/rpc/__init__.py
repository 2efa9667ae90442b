"""gRPC services (grpclib). *_pb2.py and *_grpc.py are generated from proto/ by `make proto`."""
