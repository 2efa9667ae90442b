"""Remote services Contrail calls over gRPC: a remote RankingService today."""
