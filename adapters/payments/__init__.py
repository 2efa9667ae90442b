"""Payment gateways behind app/retail/payments.PaymentGateway: the card simulator of the demo and the tests."""
