//! Driver logs of a job run: tailed from CloudWatch Logs when the run logs there, otherwise an
//! [`Error::Unsupported`] that says where EMR keeps them.

use aws_sdk_emrcontainers::types::{JobRun, MonitoringConfiguration};
use bpg_core::{Error, LogOptions, LogStream, Result};

use super::EmrContainersBackend;

/// Where a job run's logs go, read from the run itself (it may have been submitted with another
/// configuration than this backend's), else from the backend's configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogTargets {
    pub(crate) cloudwatch: Option<(String, Option<String>)>,
    pub(crate) s3_log_uri: Option<String>,
}

impl LogTargets {
    fn of(run: &JobRun, backend: &EmrContainersBackend) -> LogTargets {
        match run
            .configuration_overrides()
            .and_then(|o| o.monitoring_configuration())
        {
            Some(m) => LogTargets::from_monitoring(m),
            None if run.configuration_overrides().is_some() => LogTargets::default(),
            None => {
                let m = &backend.config.monitoring;
                LogTargets {
                    cloudwatch: m
                        .cloudwatch_log_group
                        .clone()
                        .map(|g| (g, m.cloudwatch_stream_prefix.clone())),
                    s3_log_uri: m.s3_log_uri.clone(),
                }
            }
        }
    }

    fn from_monitoring(m: &MonitoringConfiguration) -> LogTargets {
        LogTargets {
            cloudwatch: m.cloud_watch_monitoring_configuration().map(|c| {
                (
                    c.log_group_name().to_owned(),
                    c.log_stream_name_prefix().map(str::to_owned),
                )
            }),
            s3_log_uri: m
                .s3_monitoring_configuration()
                .map(|s| s.log_uri().to_owned()),
        }
    }
}

/// The CloudWatch stream name prefix under which EMR writes a job run's container logs:
/// `[<prefix>/]<virtual-cluster-id>/jobs/<job-run-id>/containers/`.
pub(crate) fn stream_prefix(prefix: Option<&str>, vc: &str, id: &str) -> String {
    match prefix
        .map(|p| p.trim_end_matches('/'))
        .filter(|p| !p.is_empty())
    {
        Some(p) => format!("{p}/{vc}/jobs/{id}/containers/"),
        None => format!("{vc}/jobs/{id}/containers/"),
    }
}

/// Why `logs` cannot stream this run's driver output, and where the logs are instead.
pub(crate) fn not_streamable(targets: &LogTargets, vc: &str, id: &str) -> String {
    let mut places = Vec::new();
    if let Some(uri) = &targets.s3_log_uri {
        places.push(format!(
            "EMR uploads them with a delay to {}/{vc}/jobs/{id}/containers/ (driver: \
             <spark-app-id>/<driver-pod>/stdout.gz and stderr.gz)",
            uri.trim_end_matches('/')
        ));
    }
    if let Some((group, prefix)) = &targets.cloudwatch {
        places.push(format!(
            "they are in CloudWatch Logs group {group} under streams {}…; build bpg-backends with \
             feature `emr-cloudwatch` to tail them",
            stream_prefix(prefix.as_deref(), vc, id)
        ));
    }
    if places.is_empty() {
        format!(
            "streaming driver logs: job run {id} has no monitoring configuration, so EMR keeps its \
             logs only as long as its pods; set a CloudWatch log group (to tail them) or an S3 log \
             URI on the connection"
        )
    } else {
        format!(
            "streaming driver logs of job run {id}: {}",
            places.join("; ")
        )
    }
}

pub(crate) async fn logs(
    backend: &EmrContainersBackend,
    run: JobRun,
    options: &LogOptions,
) -> Result<LogStream> {
    let vc = backend.config.virtual_cluster_id.clone();
    let id = run.id().unwrap_or_default().to_owned();
    let targets = LogTargets::of(&run, backend);
    #[cfg(feature = "emr-cloudwatch")]
    if let Some((group, prefix)) = &targets.cloudwatch {
        let tail = cloudwatch::Tail::new(
            backend.clone(),
            id.clone(),
            group.clone(),
            stream_prefix(prefix.as_deref(), &vc, &id),
        );
        return Ok(tail.into_stream(options.clone()));
    }
    let _ = options;
    Err(Error::Unsupported {
        backend: backend.config.name.clone(),
        operation: not_streamable(&targets, &vc, &id),
    })
}

#[cfg(feature = "emr-cloudwatch")]
mod cloudwatch {
    //! Tailing the driver's CloudWatch streams (`…/<driver-pod>/stdout` and `stderr`).

    use std::collections::VecDeque;

    use bpg_core::{Backend, JobId, LogLine, LogOptions, LogStream, Result};
    use futures::StreamExt;

    use super::super::EmrContainersBackend;
    use super::super::error::{self, CallContext};

    /// Whether a stream under the job's container prefix is the driver's stdout or stderr
    /// (`<spark-app-id>/<name>-driver/stdout`, possibly with `.gz` as some EMR releases write).
    pub(super) fn is_driver_stream(name: &str) -> bool {
        let mut segments = name.rsplit('/');
        let file = segments.next().unwrap_or_default();
        let pod = segments.next().unwrap_or_default();
        matches!(file, "stdout" | "stderr" | "stdout.gz" | "stderr.gz") && pod.ends_with("-driver")
    }

    struct Cursor {
        stream: String,
        next_token: Option<String>,
    }

    pub(super) struct Tail {
        backend: EmrContainersBackend,
        id: String,
        group: String,
        prefix: String,
        cursors: Vec<Cursor>,
        /// Lines read so far (the next line's position).
        read: u64,
    }

    impl Tail {
        pub(super) fn new(
            backend: EmrContainersBackend,
            id: String,
            group: String,
            prefix: String,
        ) -> Self {
            Tail {
                backend,
                id,
                group,
                prefix,
                cursors: Vec::new(),
                read: 0,
            }
        }

        fn ctx(&self, operation: &'static str) -> CallContext<'_> {
            CallContext {
                backend: &self.backend.config.name,
                operation,
                endpoint: &self.backend.endpoint,
                subject: format!(
                    "CloudWatch log streams {}… in group {}",
                    self.prefix, self.group
                ),
            }
        }

        /// Adds driver streams that appeared since the last look (EMR creates them when the
        /// driver pod starts, so early on there are none).
        async fn discover(&mut self) -> Result<()> {
            if self.cursors.len() >= 2 {
                return Ok(());
            }
            let mut pages = self
                .backend
                .logs_client
                .describe_log_streams()
                .log_group_name(&self.group)
                .log_stream_name_prefix(&self.prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| error::convert(&self.ctx("DescribeLogStreams"), e))?;
                for stream in page.log_streams() {
                    let Some(name) = stream.log_stream_name() else {
                        continue;
                    };
                    if is_driver_stream(name) && !self.cursors.iter().any(|c| c.stream == name) {
                        self.cursors.push(Cursor {
                            stream: name.to_owned(),
                            next_token: None,
                        });
                    }
                }
            }
            Ok(())
        }

        /// Everything new in the driver streams, in time order, as numbered lines.
        async fn poll(&mut self) -> Result<Vec<LogLine>> {
            self.discover().await?;
            let mut events: Vec<(i64, usize, String)> = Vec::new();
            for (index, cursor) in self.cursors.iter_mut().enumerate() {
                loop {
                    let mut request = self
                        .backend
                        .logs_client
                        .get_log_events()
                        .log_group_name(&self.group)
                        .log_stream_name(&cursor.stream)
                        .start_from_head(true);
                    if let Some(token) = &cursor.next_token {
                        request = request.next_token(token);
                    }
                    let ctx = CallContext {
                        backend: &self.backend.config.name,
                        operation: "GetLogEvents",
                        endpoint: &self.backend.endpoint,
                        subject: format!(
                            "CloudWatch log stream {} in group {}",
                            cursor.stream, self.group
                        ),
                    };
                    let out = request.send().await.map_err(|e| error::convert(&ctx, e))?;
                    let got = out.events().len();
                    for event in out.events() {
                        events.push((
                            event.timestamp().unwrap_or_default(),
                            index,
                            event.message().unwrap_or_default().to_owned(),
                        ));
                    }
                    let next = out.next_forward_token().map(str::to_owned);
                    // GetLogEvents returns the token it was given once the stream is exhausted.
                    let exhausted = got == 0 || next.is_none() || next == cursor.next_token;
                    if next.is_some() {
                        cursor.next_token = next;
                    }
                    if exhausted {
                        break;
                    }
                }
            }
            // Stable: events of one stream keep their order when timestamps tie.
            events.sort_by_key(|(timestamp, index, _)| (*timestamp, *index));
            let mut lines = Vec::new();
            for (_, _, message) in events {
                let message = message.strip_suffix('\n').unwrap_or(&message);
                for text in message.split('\n') {
                    lines.push(LogLine {
                        position: self.read,
                        text: text.strip_suffix('\r').unwrap_or(text).to_owned(),
                    });
                    self.read += 1;
                }
            }
            Ok(lines)
        }

        pub(super) fn into_stream(self, options: LogOptions) -> LogStream {
            let from = options.from_line;
            if !options.follow {
                let tail = options.tail;
                return futures::stream::once(async move {
                    let mut this = self;
                    this.poll().await
                })
                .flat_map(move |batch| {
                    let items: Vec<Result<LogLine>> = match batch {
                        Ok(lines) => {
                            let mut kept: VecDeque<LogLine> =
                                lines.into_iter().filter(|l| l.position >= from).collect();
                            if let Some(n) = tail {
                                let n = usize::try_from(n).unwrap_or(usize::MAX);
                                while kept.len() > n {
                                    kept.pop_front();
                                }
                            }
                            kept.into_iter().map(Ok).collect()
                        }
                        Err(e) => vec![Err(e)],
                    };
                    futures::stream::iter(items)
                })
                .boxed();
            }
            let interval = self.backend.config.log_poll_interval;
            futures::stream::unfold(Some((self, false)), move |state| async move {
                let (mut tail, mut job_ended) = state?;
                loop {
                    let batch: Vec<Result<LogLine>> = match tail.poll().await {
                        Ok(lines) => lines
                            .into_iter()
                            .filter(|l| l.position >= from)
                            .map(Ok)
                            .collect(),
                        Err(e) => return Some((vec![Err(e)], None)),
                    };
                    if job_ended {
                        // This read started after the run ended: nothing more will come.
                        return if batch.is_empty() {
                            None
                        } else {
                            Some((batch, None))
                        };
                    }
                    if !batch.is_empty() {
                        return Some((batch, Some((tail, false))));
                    }
                    match tail.backend.status(&JobId::new(tail.id.clone())).await {
                        // One more read picks up what the driver wrote just before it ended.
                        Ok(status) if status.is_terminal() => job_ended = true,
                        Ok(_) => tokio::time::sleep(interval).await,
                        Err(e) if e.is_temporary() => tokio::time::sleep(interval).await,
                        Err(e) => return Some((vec![Err(e)], None)),
                    }
                }
            })
            .flat_map(futures::stream::iter)
            .boxed()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::is_driver_stream;

        #[test]
        fn driver_streams_are_recognised() {
            let base = "pipelines/vc1/jobs/0000000abc/containers";
            assert!(is_driver_stream(&format!(
                "{base}/spark-0000000abc/spark-0000000abc-driver/stdout"
            )));
            assert!(is_driver_stream(&format!(
                "{base}/spark-0000000abc/spark-0000000abc-driver/stderr.gz"
            )));
            assert!(!is_driver_stream(&format!(
                "{base}/spark-0000000abc/spark-0000000abc-exec-1/stdout"
            )));
            assert!(!is_driver_stream(&format!(
                "{base}/0000000abc-runner-x7z/stdout"
            )));
            assert!(!is_driver_stream(&format!(
                "{base}/spark-0000000abc/spark-0000000abc-driver/metrics"
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_prefix_follows_emr_layout() {
        assert_eq!(
            stream_prefix(Some("pipelines/"), "vc1", "jr1"),
            "pipelines/vc1/jobs/jr1/containers/"
        );
        assert_eq!(
            stream_prefix(None, "vc1", "jr1"),
            "vc1/jobs/jr1/containers/"
        );
    }

    #[test]
    fn unstreamable_logs_name_where_they_are() {
        let s3 = LogTargets {
            cloudwatch: None,
            s3_log_uri: Some("s3://logs/emr/".into()),
        };
        let message = not_streamable(&s3, "vc1", "jr1");
        assert!(
            message.contains("s3://logs/emr/vc1/jobs/jr1/containers/"),
            "{message}"
        );
        let none = not_streamable(&LogTargets::default(), "vc1", "jr1");
        assert!(none.contains("no monitoring configuration"), "{none}");
        let cw = LogTargets {
            cloudwatch: Some(("/emr/spark".into(), None)),
            s3_log_uri: None,
        };
        let message = not_streamable(&cw, "vc1", "jr1");
        assert!(
            message.contains("/emr/spark") && message.contains("vc1/jobs/jr1/containers/"),
            "{message}"
        );
    }
}
