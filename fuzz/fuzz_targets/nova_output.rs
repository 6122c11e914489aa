//! Any bytes Bedrock could put in an output chunk, through the Nova event parser and the
//! mapping to session events: several events per input, so the mapper's state is exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voice_agent::model::nova::mapping::OutputMapper;
use voice_agent::model::nova::wire::parse_output;

fuzz_target!(|data: &[u8]| {
    let mut mapper = OutputMapper::default();
    let mut out = Vec::new();
    for chunk in data.split(|b| *b == b'\n') {
        if let Ok(event) = parse_output(chunk) {
            mapper.on_event(event, &mut out);
        }
    }
    mapper.reset_stream(&mut out);
});
