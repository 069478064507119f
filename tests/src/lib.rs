//! The lab Internet: a small, known network in Linux network namespaces, used by the tests
//! and by the README's demo. See `topologies/default.toml` for what it contains.

pub mod demo;
pub mod export;
pub mod forge;
pub mod fuzzseeds;
pub mod gencrawl;
pub mod netns;
pub mod nmap;
pub mod proxy;
pub mod rules;
pub mod s3;
pub mod serve;
pub mod topology;
pub mod truth;
