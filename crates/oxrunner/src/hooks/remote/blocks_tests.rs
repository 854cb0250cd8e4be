//! Block ids, the block list body, and the plan cut to Azure's limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;

use super::{MAX_BLOCK_SIZE, MAX_BLOCKS, block_ids, block_list_xml};
use crate::hooks::remote::parts::PartPlan;

const MIB: u64 = 1024 * 1024;

fn decode(id: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(id).unwrap();
    String::from_utf8(raw).unwrap()
}

#[test]
fn block_ids_are_equal_length_base64_in_order() {
    // The largest upload Azure takes: every id of it (and of any other upload) has one length.
    let ids = block_ids(u64::MAX, MAX_BLOCKS as usize);
    assert_eq!(ids.len(), 50_000);
    let other = block_ids(0x1234, 3);
    let len = ids[0].len();
    assert!(ids.iter().chain(&other).all(|id| id.len() == len), "{other:?}");
    // 16 bytes before encoding, as the Azure SDKs' ids.
    assert_eq!(decode(&ids[0]).len(), 16);
    assert_eq!(decode(&other[2]), "0000001234000002");
    // Sorted by index, and the same prefix throughout one upload.
    let decoded: Vec<String> = ids.iter().map(|id| decode(id)).collect();
    let prefix = &decoded[0][..10];
    for (i, d) in decoded.iter().enumerate() {
        assert_eq!(&d[..10], prefix);
        assert_eq!(d[10..].parse::<usize>().unwrap(), i);
    }
    let mut sorted = decoded.clone();
    sorted.sort();
    assert_eq!(sorted, decoded);
    // Two uploads (two prefixes) never share an id.
    assert!(block_ids(1, 5).iter().all(|id| !block_ids(2, 5).contains(id)));
}

#[test]
fn the_block_list_names_every_block_in_order() {
    let ids = block_ids(7, 3);
    let xml = block_list_xml(&ids);
    assert_eq!(
        xml,
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest>\
             <Latest>{}</Latest></BlockList>",
            ids[0], ids[1], ids[2]
        )
    );
}

#[test]
fn the_plan_is_cut_to_azures_block_limits() {
    let plan = PartPlan {
        threshold: 64 * MIB,
        part_size: 16 * MIB,
        in_flight: 4,
    };
    // Within the limits the plan's own part size holds.
    let r = plan.ranges_within(40 * MIB, MAX_BLOCKS, MAX_BLOCK_SIZE).unwrap();
    assert_eq!(r, [(0, 16 * MIB), (16 * MIB, 32 * MIB), (32 * MIB, 40 * MIB)]);
    // 1 TiB in 16 MiB parts would be 65,536 blocks: the parts grow so that 50,000 suffice.
    let total = 1024 * 1024 * MIB;
    let r = plan.ranges_within(total, MAX_BLOCKS, MAX_BLOCK_SIZE).unwrap();
    assert!(r.len() as u64 <= MAX_BLOCKS, "{}", r.len());
    assert!(r.len() > 40_000, "{}", r.len());
    assert_eq!(r.last().unwrap().1, total);
    assert!(r.windows(2).all(|w| w[0].1 == w[1].0));
    // A part size above Azure's largest block is cut down to it.
    let huge = PartPlan {
        part_size: 5000 * MIB,
        ..plan
    };
    let r = huge
        .ranges_within(9000 * MIB, MAX_BLOCKS, MAX_BLOCK_SIZE)
        .unwrap();
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|(s, e)| e - s <= MAX_BLOCK_SIZE), "{r:?}");
    // More than 50,000 blocks of 4000 MiB can hold: no plan.
    let beyond = MAX_BLOCKS * MAX_BLOCK_SIZE + 1;
    assert_eq!(plan.ranges_within(beyond, MAX_BLOCKS, MAX_BLOCK_SIZE), None);
    assert!(
        plan.ranges_within(MAX_BLOCKS * MAX_BLOCK_SIZE, MAX_BLOCKS, MAX_BLOCK_SIZE)
            .is_some_and(|r| r.len() as u64 == MAX_BLOCKS)
    );
}
