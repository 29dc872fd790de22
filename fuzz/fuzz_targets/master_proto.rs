//! The master protocol (`src/proto`): the input is one direction of a connection, read frame by frame
//! as the master reads requests and a store client reads responses (`frame_len`, then
//! `decode`). A frame that decodes encodes to a frame that decodes to the same envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake::proto::{self, Envelope, MAX_FRAME, Request, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(env: &Envelope<T>) {
    let mut out = Vec::new();
    proto::encode(env, &mut out).expect("a decoded envelope encodes");
    let len = proto::frame_len(out[..4].try_into().unwrap()).expect("within MAX_FRAME");
    assert_eq!(len, out.len() - 4);
    let back: Envelope<T> = proto::decode(&out[4..]).expect("our own frame decodes");
    assert_eq!(&back, env);
}

fuzz_target!(|data: &[u8]| {
    // The first byte says which end reads: even, requests (the server); odd, responses.
    let Some((&end, mut rest)) = data.split_first() else { return };
    while rest.len() >= 4 {
        let Ok(len) = proto::frame_len(rest[..4].try_into().unwrap()) else { return };
        assert!(len <= MAX_FRAME);
        let Some(body) = rest.get(4..4 + len) else { return };
        rest = &rest[4 + len..];
        if end % 2 == 0 {
            if let Ok(env) = proto::decode::<Request>(body) {
                let _ = (env.body.kind(), env.body.kind_index());
                round_trip(&env);
            }
        } else if let Ok(env) = proto::decode::<Response>(body) {
            round_trip(&env);
        }
    }
});
