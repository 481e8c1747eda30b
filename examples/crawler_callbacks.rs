//! A small crawler: a local HTTP server serves 20 pages; pool tasks fetch
//! them with a real HTTP client, and a callback parses each page in the
//! parent as soon as its result arrives, printing its URL and length.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use multiproc::{ApplyOptions, Pool};

const PAGES: usize = 20;

/// The page at `/page/{n}`: a title and `n + 1` paragraphs.
fn page(n: usize) -> String {
    let mut body = format!("<html><head><title>Page {n}</title></head><body>");
    for i in 0..=n {
        body.push_str(&format!("<p>paragraph {i} of page {n}</p>"));
    }
    body.push_str("</body></html>");
    body
}

fn serve(listener: TcpListener, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let _ = answer(stream);
        });
    }
}

fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path
        .strip_prefix("/page/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) if n < PAGES => ("200 OK", page(n)),
        _ => ("404 Not Found", "not found".to_owned()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// The task, run in a worker: fetch one URL.
fn fetch(url: String) -> Result<(String, String), String> {
    let body = ureq::get(&url)
        .timeout(Duration::from_secs(10))
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .into_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((url, body))
}

fn title(html: &str) -> &str {
    html.split("<title>")
        .nth(1)
        .and_then(|rest| rest.split("</title>").next())
        .unwrap_or("?")
}

fn main() -> multiproc::Result<()> {
    // The pool first: its workers are forked before the server's threads exist.
    let pool = Pool::new(4)?;

    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| multiproc::Error::io("bind", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| multiproc::Error::io("local_addr", e))?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || serve(listener, stop))
    };
    println!("serving {PAGES} pages on http://{addr}/");

    let (tx, rx) = mpsc::channel();
    for n in 0..PAGES {
        let url = format!("http://{addr}/page/{n}");
        let tx = tx.clone();
        let etx = tx.clone();
        pool.apply_async_with(
            fetch,
            url,
            ApplyOptions::new()
                .callback(move |r: &Result<(String, String), String>| {
                    // Runs in the parent, as soon as this page's result arrives.
                    match r {
                        Ok((url, body)) => {
                            let paragraphs = body.matches("<p>").count();
                            println!(
                                "{url:<36} {:>5} bytes  title {:?}, {paragraphs} paragraphs",
                                body.len(),
                                title(body)
                            );
                            let _ = tx.send(Ok(body.len()));
                        }
                        Err(e) => {
                            println!("fetch failed: {e}");
                            let _ = tx.send(Err(e.clone()));
                        }
                    }
                })
                .error_callback(move |e| {
                    println!("task failed: {e}");
                    let _ = etx.send(Err(e.to_string()));
                }),
        )?;
    }
    drop(tx);
    let mut total = 0;
    for _ in 0..PAGES {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(len)) => total += len,
            Ok(Err(e)) => return Err(multiproc::Error::new(multiproc::ErrorKind::Io, e)),
            Err(_) => {
                return Err(multiproc::Error::timeout("a page never arrived"));
            }
        }
    }
    println!("fetched {PAGES} pages, {total} bytes in all");

    pool.close();
    pool.join()?;
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect(addr); // wake the accept loop
    let _ = server.join();
    Ok(())
}
