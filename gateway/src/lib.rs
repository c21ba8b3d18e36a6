//! zhengyun-gateway: one port serving TLCP, TLS 1.3 with the RFC 8998 SM suites, and standard
//! TLS, with certificates from zhengyun's SmCertificate Secrets, in front of a TCP or HTTP
//! backend.

#![forbid(unsafe_code)]

pub mod contexts;
pub mod hello;
pub mod http;
pub mod material;
pub mod metrics;
pub mod prefixed;
pub mod relay;
pub mod reload;
pub mod serve;
