"""Every byte that leaves the process, behind the domains' ports: SQL, and (as they move here) HTTP, SMTP, gRPC."""
