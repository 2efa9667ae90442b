"""Partners Contrail calls over HTTP: push, SMS and paid-media providers."""
