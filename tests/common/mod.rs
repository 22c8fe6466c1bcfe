//! Helpers shared by the integration tests.

use std::path::Path;

use eod_dataflow::TradeEvent;
use eod_sources::envelope::to_event;
use eod_sources::fix::{Decoded, Decoder, Framed, Framer};

/// Decodes an archive independently of the code under test: every file in name order.
/// Returns the trade events and the number of framed units (messages and dead chunks).
pub fn decode_archive(dir: &Path) -> (Vec<TradeEvent>, u64) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let (mut events, mut framed) = (Vec::new(), 0u64);
    for path in names {
        let mut framer = Framer::default();
        framer.push(&std::fs::read(&path).unwrap());
        framer.finish();
        while let Some(frame) = framer.next_frame() {
            framed += 1;
            if let Framed::Message { bytes, .. } = frame {
                if let Ok(Decoded::Trade(envelope)) = Decoder::new().decode(bytes) {
                    events.push(to_event(envelope).unwrap());
                }
            }
        }
    }
    (events, framed)
}
