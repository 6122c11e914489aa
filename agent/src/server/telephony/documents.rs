//! The call-setup documents that connect a call to the agent's media path: TwiML for Twilio,
//! TeXML for Telnyx, an NCCO for Vonage. Pure builders.

use serde_json::{Value, json};

/// TwiML: `<Connect><Stream>` to `stream_url` with each parameter as a `<Parameter>` (Twilio
/// delivers them in the stream's `start.customParameters`; its stream URLs take no query), then
/// `<Dial>` to the fallback number, which runs when the agent ends the stream.
pub fn twiml(stream_url: &str, parameters: &[(String, String)], fallback: Option<&str>) -> String {
    let mut xml = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect>"#);
    xml.push_str(&format!(r#"<Stream url="{}">"#, escape(stream_url)));
    for (name, value) in parameters {
        xml.push_str(&format!(
            r#"<Parameter name="{}" value="{}"/>"#,
            escape(name),
            escape(value)
        ));
    }
    xml.push_str("</Stream></Connect>");
    if let Some(number) = fallback {
        xml.push_str(&format!("<Dial>{}</Dial>", escape(number)));
    }
    xml.push_str("</Response>");
    xml
}

/// TeXML: `<Connect><Stream>` to the signed `stream_url`, bidirectional RTP in PCMU both ways.
pub fn texml(stream_url: &str, fallback: Option<&str>) -> String {
    let dial = fallback.map_or_else(String::new, |n| format!("<Dial>{}</Dial>", escape(n)));
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="{}" track="inbound_track" codec="PCMU" bidirectionalMode="rtp" bidirectionalCodec="PCMU" bidirectionalSamplingRate="8000"/></Connect>{dial}</Response>"#,
        escape(stream_url)
    )
}

/// NCCO: one `connect` action to the signed `stream_url` as a websocket endpoint in linear PCM.
pub fn ncco(stream_url: &str, sample_rate: u32) -> Value {
    json!([{
        "action": "connect",
        "endpoint": [{
            "type": "websocket",
            "uri": stream_url,
            "content-type": format!("audio/l16;rate={sample_rate}"),
            "headers": {},
        }],
    }])
}

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_connects_a_bidirectional_stream_with_parameters() {
        let parameters = vec![
            ("caller".to_owned(), "+15550100".to_owned()),
            ("var.note".to_owned(), r#"a "quoted" <b> & c"#.to_owned()),
        ];
        assert_eq!(
            twiml("wss://voice.example.com/twilio", &parameters, None),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.example.com/twilio"><Parameter name="caller" value="+15550100"/><Parameter name="var.note" value="a &quot;quoted&quot; &lt;b&gt; &amp; c"/></Stream></Connect></Response>"#
        );
    }

    #[test]
    fn texml_escapes_the_signed_query() {
        let xml = texml("wss://v.example/telnyx?call_id=x&exp=1&sig=abc", None);
        assert!(
            xml.contains(r#"url="wss://v.example/telnyx?call_id=x&amp;exp=1&amp;sig=abc""#),
            "{xml}"
        );
        assert!(xml.contains(r#"bidirectionalMode="rtp""#));
    }

    #[test]
    fn the_fallback_number_is_dialled_after_the_stream() {
        let xml = twiml("wss://v.example/twilio", &[], Some("+15550100"));
        assert!(xml.ends_with("</Connect><Dial>+15550100</Dial></Response>"), "{xml}");
        let xml = texml("wss://v.example/telnyx", Some("+15550100"));
        assert!(xml.ends_with("</Connect><Dial>+15550100</Dial></Response>"), "{xml}");
    }

    #[test]
    fn ncco_is_one_connect_action() {
        assert_eq!(
            ncco("wss://v.example/vonage?sig=a", 16_000),
            json!([{"action": "connect", "endpoint": [{"type": "websocket", "uri": "wss://v.example/vonage?sig=a",
                    "content-type": "audio/l16;rate=16000", "headers": {}}]}])
        );
    }
}
