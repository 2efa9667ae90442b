"""The learning loop: models retrained from the outcomes Contrail logs, versioned, evaluated before they go live."""
