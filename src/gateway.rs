//! Wires the actors together for the `coap-gateway` binary.
