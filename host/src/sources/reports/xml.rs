//! Walking an XML report safely: no DTD, so no entity expansion, and a
//! document that stops before its root closes is an error.

use quick_xml::events::{BytesStart, Event};

use super::{ReportError, err};

/// An element boundary met while walking a document.
pub(super) enum Xml<'a, 'b> {
    /// A start or empty element, its depth, and whether it is empty.
    Open(&'a BytesStart<'b>, usize, bool),
    /// An end element's name and the depth it returns to.
    Close(&'a [u8], usize),
}

/// Reads XML events to the end, refusing a DTD and a document that stops
/// before its root closes; `visit` sees every element boundary.
pub(super) fn walk_xml(
    bytes: &[u8],
    what: &str,
    mut visit: impl FnMut(Xml<'_, '_>) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let config = reader.config_mut();
    config.check_end_names = true;
    let mut buf = Vec::new();
    let mut depth = 0usize;
    let mut roots = 0;
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| err(format!("{what}: malformed XML at byte {pos}: {e}")))?;
        match event {
            Event::DocType(_) => {
                return Err(err(format!(
                    "{what}: document type declarations are not accepted (entity expansion)"
                )));
            }
            Event::Start(e) => {
                if depth == 0 {
                    roots += 1;
                }
                visit(Xml::Open(&e, depth, false))?;
                depth += 1;
                if depth > 256 {
                    return Err(err(format!("{what}: elements nested deeper than 256")));
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    roots += 1;
                }
                visit(Xml::Open(&e, depth, true))?;
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                visit(Xml::Close(e.name().as_ref(), depth))?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if depth > 0 {
        return Err(err(format!(
            "{what}: truncated: {depth} element(s) still open at the end of the file"
        )));
    }
    if roots == 0 {
        return Err(err(format!("{what}: no root element")));
    }
    Ok(())
}

pub(super) fn attr(
    e: &BytesStart<'_>,
    name: &str,
    what: &str,
) -> Result<Option<String>, ReportError> {
    for a in e.attributes() {
        let a = a.map_err(|x| err(format!("{what}: malformed attribute: {x}")))?;
        if a.key.as_ref() == name.as_bytes() {
            let v = a
                .unescape_value()
                .map_err(|x| err(format!("{what}: attribute `{name}`: {x}")))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

pub(super) fn attr_number(
    e: &BytesStart<'_>,
    name: &str,
    what: &str,
) -> Result<Option<f64>, ReportError> {
    attr(e, name, what)?
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| err(format!("{what}: `{name}` is `{v}`, not a number")))
        })
        .transpose()
}
