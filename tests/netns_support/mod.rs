//! Helpers of `tests/netns.rs`: namespaces and veth pairs ([`lab`]), role processes spoken to
//! over JSON lines ([`peer`]), and the roles' bodies ([`roles`]).

pub mod lab;
pub mod peer;
pub mod roles;
