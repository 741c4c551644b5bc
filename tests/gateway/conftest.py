from gateway.gateway_process import gateway

__all__ = ["gateway"]
