"""Remote services Contrail calls over gRPC: a remote RankingService and a remote SyncValue service."""
