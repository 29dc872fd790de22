//! One request in, one response out.

use std::time::Instant;

use super::MasterState;
use crate::proto::{ClientId, ErrorCode, Outcome, Request, Response};

impl MasterState {
    /// Answers `request`, which arrived over a connection of `conn_client` (the id its `Hello`
    /// named). `Hello` itself belongs to the connection and is refused here.
    pub fn handle(&mut self, conn_client: ClientId, request: Request, now: Instant) -> Response {
        if !matches!(request, Request::Ping { .. }) {
            self.touch(conn_client, now);
        }
        match request {
            Request::Hello { .. } => Response::Error(ErrorCode::InvalidParams),
            Request::Health => Response::Done,
            Request::ReadsDone { reads } => {
                self.reads_done(&reads);
                Response::Done
            }
            Request::Ping { client } => Response::Pong { known: self.ping(client, now) },
            Request::MountSegment { client, segment, name, base, size } => {
                done(self.mount_segment(client, segment, &name, base, size, now))
            }
            Request::UnmountSegment { client, segment } => match self.unmount_segment(client, segment, now) {
                Ok(wait_ms) => Response::Unmounted { wait_ms },
                Err(e) => Response::Error(e),
            },
            Request::PutStart { client, key, size, config, upsert } => {
                match self.put_start(client, &key, size, &config, upsert, now) {
                    Ok(slot) => Response::Put(slot),
                    Err(e) => Response::Error(e),
                }
            }
            Request::PutEnd { client, key, put_id } => done(self.put_end(client, &key, put_id, now)),
            Request::PutRevoke { client, key, put_id } => done(self.put_revoke(client, &key, put_id)),
            Request::BatchPutStart { client, items, config, upsert } => Response::PutBatch(
                items.iter().map(|item| self.put_start(client, &item.key, item.size, &config, upsert, now)).collect(),
            ),
            Request::BatchPutFinish { client, puts, revoke } => {
                Response::Codes(
                    puts.iter()
                        .map(|(key, id)| {
                            if revoke { self.put_revoke(client, key, *id) } else { self.put_end(client, key, *id, now) }
                        })
                        .collect(),
                )
            }
            Request::GetReplicas { key } => match self.get_replicas(&key, now) {
                Ok(info) => Response::Object(info),
                Err(e) => Response::Error(e),
            },
            Request::BatchGetReplicas { keys } => {
                Response::Objects(keys.iter().map(|k| self.get_replicas(k, now)).collect())
            }
            Request::BatchExists { keys } => Response::Flags(keys.iter().map(|k| Ok(self.exists(k, now))).collect()),
            Request::Remove { key, force } => done(self.remove(&key, force, now)),
            Request::RemoveByRegex { pattern, force } => match self.remove_by_regex(&pattern, force, now) {
                Ok(n) => Response::Count(n),
                Err(e) => Response::Error(e),
            },
            Request::RemoveAll { force } => Response::Count(self.remove_all(force, now)),
            Request::DrainSegment { client, segment } => done(self.drain_segment(client, segment)),
            Request::CreateCopyTask { key, targets } => task(self.create_copy_task(&key, &targets, now)),
            Request::CreateMoveTask { key, source, target } => task(self.create_move_task(&key, &source, &target, now)),
            Request::QueryTask { task } => match self.query_task(task) {
                Ok(info) => Response::TaskInfo(info),
                Err(e) => Response::Error(e),
            },
            Request::FetchTasks { client, max } => Response::Tasks(self.fetch_tasks(client, max, now)),
            Request::CompleteTask { client, task, success, message } => {
                done(self.complete_task(client, task, success, &message, now))
            }
            Request::ReplicaCopyStart { client, key, source, targets } => {
                replica_op(self.replica_op_start(client, &key, &source, &targets, false, now))
            }
            Request::ReplicaMoveStart { client, key, source, target } => {
                replica_op(self.replica_op_start(client, &key, &source, &[target], true, now))
            }
            Request::ReplicaOpEnd { client, key, op, revoke } => {
                done(self.replica_op_end(client, &key, op, revoke, now))
            }
            Request::ReplicaClear { client, keys, segment_name } => {
                Response::Keys(self.replica_clear(client, &keys, &segment_name, now))
            }
        }
    }
}

fn task(r: Outcome<crate::proto::TaskId>) -> Response {
    match r {
        Ok(id) => Response::Task(id),
        Err(e) => Response::Error(e),
    }
}

fn replica_op(r: Outcome<crate::proto::ReplicaOp>) -> Response {
    match r {
        Ok(op) => Response::ReplicaOp(op),
        Err(e) => Response::Error(e),
    }
}

fn done(r: Outcome<()>) -> Response {
    match r {
        Ok(()) => Response::Done,
        Err(e) => Response::Error(e),
    }
}
