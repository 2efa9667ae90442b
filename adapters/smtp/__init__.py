"""Mail over SMTP: the relay email is sent through, and the embedded sink that can stand in for one."""
