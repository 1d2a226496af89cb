//! The CoAP endpoint (RFC 7252 messaging layer over coap-lite).
