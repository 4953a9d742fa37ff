//! Two halves of one pass over many rows, on two threads: the caller's thread reads pages
//! from the database (the connection stays where it is), and a formatting thread turns each
//! page into the pack's text (CSV, JSON, counts) while the next page is read. Reading and
//! formatting each take about half of an export's time, so on two cores the pass takes the
//! longer of the two instead of their sum. At most `QUEUED_PAGES` pages wait between them,
//! so memory stays bounded whatever the campaign's size.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::{Error, Result};

/// Pages read ahead of the formatter.
const QUEUED_PAGES: usize = 2;

/// Hands pages to the formatting thread.
pub struct PageSender<P> {
    pages: SyncSender<P>,
}

impl<P> PageSender<P> {
    /// Hands over one page; fails when the formatter stopped (its error says why).
    pub fn send(&self, page: P) -> Result<()> {
        self.pages
            .send(page)
            .map_err(|_| Error::Internal("the evidence pack's row formatter stopped".into()))
    }
}

/// Runs `read` on this thread, which hands pages to `format` running on a second thread;
/// returns what `format` returns. An error of the formatter comes first: a reader that could
/// not hand a page over failed because of it. `format` takes every page until the pages end
/// (or fails): a formatter that stopped early would leave the reader unable to hand over.
pub fn read_and_format<P, T>(
    read: impl FnOnce(&PageSender<P>) -> Result<()>,
    format: impl FnOnce(Receiver<P>) -> Result<T> + Send,
) -> Result<T>
where
    P: Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let (pages, received) = sync_channel(QUEUED_PAGES);
        let formatter = std::thread::Builder::new()
            .name("evidence-rows".into())
            .spawn_scoped(scope, move || format(received))
            .map_err(|e| Error::Internal(format!("cannot start the row formatter: {e}")))?;
        let sender = PageSender { pages };
        let read = read(&sender);
        // The formatter's pages end here, whether reading finished or failed.
        drop(sender);
        // A panic of the formatter is an error here, so that the caller cleans up.
        let formatted = formatter.join().map_err(|panic| {
            let said = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Error::Internal(format!(
                "the evidence pack's row formatter panicked: {said}"
            ))
        })?;
        let value = formatted?;
        read?;
        Ok(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_reaches_the_formatter_in_order() {
        let sum = read_and_format(
            |pages| {
                for page in 0..100u64 {
                    pages.send(vec![page, page])?;
                }
                Ok(())
            },
            |received| {
                let mut seen = Vec::new();
                for page in received {
                    seen.push(page[0]);
                }
                Ok(seen)
            },
        )
        .unwrap();
        assert_eq!(sum, (0..100).collect::<Vec<u64>>());
    }

    #[test]
    fn a_formatter_that_fails_stops_the_reader_with_its_own_error() {
        let mut sent = 0;
        let failed = read_and_format(
            |pages| {
                for page in 0..1_000u64 {
                    pages.send(page)?;
                    sent += 1;
                }
                Ok(())
            },
            |received| -> Result<()> {
                let _first = received.recv();
                Err(Error::Io("disk full".into()))
            },
        )
        .unwrap_err();
        assert!(failed.to_string().contains("disk full"), "{failed}");
        assert!(
            sent < 1_000,
            "the reader went on after the formatter stopped"
        );
    }

    #[test]
    fn a_reader_that_fails_is_reported_after_the_formatter_finishes() {
        let failed = read_and_format(
            |pages| {
                pages.send(1u8)?;
                Err(Error::Internal("database gone".into()))
            },
            |received| Ok(received.iter().count()),
        )
        .unwrap_err();
        assert!(failed.to_string().contains("database gone"), "{failed}");
    }
}
