//! The request/response surface the host uses: `handle` dispatches every
//! request, the checkpoint request needs a configured path, the types
//! survive postcard, and the futures can be spawned (Send).

use lp_replay::{
    ItemData, PriorityUpdate, Replay, ReplayError, Request, Response, Sampled, Selector, Tensor,
    TensorData,
};

use crate::{item, simple};

#[tokio::test]
async fn handle_dispatches_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let replay = Replay::new(vec![simple("t", 10, Selector::Fifo)], 0).unwrap();
    let keys = match replay
        .handle(Request::Insert(vec![
            item(1, &[("t", 1.0)]),
            item(2, &[("t", 2.0)]),
        ]))
        .await
    {
        Response::Inserted(Ok(keys)) => keys,
        other => panic!("{other:?}"),
    };
    assert_eq!(keys, vec![1, 2]);
    match replay
        .handle(Request::Sample {
            table: "t".into(),
            n: 2,
        })
        .await
    {
        Response::Sampled(Ok(s)) => {
            assert_eq!(s.iter().map(|s| s.key).collect::<Vec<_>>(), vec![1, 1])
        }
        other => panic!("{other:?}"),
    }
    let updates = vec![PriorityUpdate {
        key: 1,
        priority: 4.0,
    }];
    assert_eq!(
        replay
            .handle(Request::UpdatePriorities {
                table: "t".into(),
                updates
            })
            .await,
        Response::Updated(Ok(()))
    );
    assert_eq!(
        replay
            .handle(Request::Delete {
                table: "t".into(),
                keys: vec![1, 7]
            })
            .await,
        Response::Deleted(Ok(1))
    );
    match replay.handle(Request::Info).await {
        Response::Info(info) => {
            assert_eq!((info.len(), info[0].size, info[0].samples), (1, 1, 2));
            assert_eq!(info[0].sampler, "fifo");
            assert_eq!(info[0].rate_limiter, "min_size(min_size=1)");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        replay.handle(Request::Reset { table: "t".into() }).await,
        Response::Reset(Ok(()))
    );
    assert_eq!(replay.info()[0].inserts, 0);
    assert_eq!(
        replay
            .handle(Request::Sample {
                table: "x".into(),
                n: 1
            })
            .await,
        Response::Sampled(Err(ReplayError::NoSuchTable("x".into())))
    );

    match replay.handle(Request::Checkpoint).await {
        Response::Checkpointed(Err(ReplayError::Invalid(m))) => {
            assert!(m.contains("no checkpoint directory"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let path = dir.path().join("r.ckpt");
    let replay = replay.with_checkpoint_path(path.clone());
    assert_eq!(
        replay.handle(Request::Checkpoint).await,
        Response::Checkpointed(Ok(path.display().to_string()))
    );
    assert!(path.exists());
}

#[test]
fn types_round_trip_through_postcard() {
    let data = ItemData::Tensors(vec![
        Tensor {
            name: "x".into(),
            shape: vec![2],
            data: TensorData::F32(vec![1.5, -0.0]),
        },
        Tensor {
            name: "y".into(),
            shape: vec![3],
            data: TensorData::Bytes(vec![1, 2, 3]),
        },
    ]);
    let request = Request::Insert(vec![
        item(5, &[("t", 0.5)]),
        lp_replay::NewItem {
            data: data.clone().into(),
            priorities: vec![],
        },
    ]);
    let bytes = postcard::to_stdvec(&request).unwrap();
    assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), request);
    let response = Response::Sampled(Ok(vec![Sampled {
        key: 3,
        probability: 0.25,
        table_size: 4,
        times_sampled: 1,
        priority: 2.0,
        data: data.into(),
    }]));
    let bytes = postcard::to_stdvec(&response).unwrap();
    assert_eq!(postcard::from_bytes::<Response>(&bytes).unwrap(), response);
    // Raw bytes are one length and the bytes.
    let raw = ItemData::Raw(vec![7; 1000]);
    let bytes = postcard::to_stdvec(&raw).unwrap();
    assert_eq!(bytes.len(), 1 + 2 + 1000);
    assert_eq!(postcard::from_bytes::<ItemData>(&bytes).unwrap(), raw);
}

/// Counts how postcard hands bytes to its output.
#[derive(Default)]
struct Pieces {
    pushes: usize,
    extends: usize,
}

impl postcard::ser_flavors::Flavor for Pieces {
    type Output = Pieces;

    fn try_push(&mut self, _: u8) -> postcard::Result<()> {
        self.pushes += 1;
        Ok(())
    }

    fn try_extend(&mut self, _: &[u8]) -> postcard::Result<()> {
        self.extends += 1;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Pieces> {
        Ok(self)
    }
}

#[test]
fn byte_buffers_are_written_in_one_piece() {
    // As serde bytes, 100 KiB are one write; as a sequence they would be
    // one write per byte.
    let big = vec![7u8; 100 << 10];
    let values = [
        ItemData::Raw(big.clone()),
        ItemData::Tensors(vec![Tensor {
            name: "t".into(),
            shape: vec![100 << 10],
            data: TensorData::Bytes(big),
        }]),
    ];
    for value in values {
        let pieces =
            postcard::serialize_with_flavor::<_, _, Pieces>(&value, Pieces::default()).unwrap();
        assert!(
            pieces.pushes + pieces.extends < 20,
            "{} pushes, {} extends",
            pieces.pushes,
            pieces.extends
        );
    }
}

#[test]
fn futures_can_be_spawned() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<Replay>();
    let replay = Replay::new(vec![simple("t", 10, Selector::Fifo)], 0).unwrap();
    send(&replay.insert(Vec::new()));
    send(&replay.sample("t", 1));
    send(&replay.handle(Request::Info));
}
