/*
 * A Kafka Streams application of kpy's compat tests (tests/compat/test_streams.py), written for
 * them: the parts of Streams that lean on the broker beyond WordCount.
 *
 * Input "pageviews": key = user, value = page, the record timestamp = when the page was viewed.
 * Output "views-per-user": key = user, value = the user's running count of views (a KTable in
 *   the state store "views-per-user", backed by a compacted changelog topic).
 * Output "views-per-page-window": key = "page@<window start ms>", value = the running count of
 *   that page's views in 10-second tumbling windows (the windowed store "views-per-page-window",
 *   whose changelog is compact,delete). Counting per page needs the records re-keyed by page, so
 *   Streams writes them through the repartition topic "<application.id>-by-page-repartition".
 *
 * Usage: PageViewStats <streams.properties> (application.id, bootstrap.servers, state.dir,
 * processing.guarantee, ...). It runs until SIGTERM, when it closes cleanly (commits, flushes).
 */
package dev.kpy.compat;

import java.io.FileInputStream;
import java.io.IOException;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

public final class PageViewStats {
    private PageViewStats() {
    }

    public static void main(final String[] args) throws IOException, InterruptedException {
        final Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        final StreamsBuilder builder = new StreamsBuilder();
        final KStream<String, String> views =
            builder.stream("pageviews", Consumed.with(Serdes.String(), Serdes.String()));

        views.groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
            .count(Materialized.as("views-per-user"))
            .toStream()
            .to("views-per-user", Produced.with(Serdes.String(), Serdes.Long()));

        // The grace period is longer than the input's span of timestamps: no view is dropped as
        // late, whichever input partition Streams happens to read first.
        views.groupBy((user, page) -> page, Grouped.with("by-page", Serdes.String(), Serdes.String()))
            .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofSeconds(10), Duration.ofMinutes(5)))
            .count(Materialized.as("views-per-page-window"))
            .toStream((window, count) -> window.key() + "@" + window.window().start())
            .to("views-per-page-window", Produced.with(Serdes.String(), Serdes.Long()));

        final KafkaStreams streams = new KafkaStreams(builder.build(), props);
        // Done when SIGTERM has closed it, or when Streams gave up (a stream thread died of an
        // exception: Streams' default handler shuts the client down, state ERROR); then exit 1,
        // so the test sees the failure instead of a process that idles.
        final CountDownLatch done = new CountDownLatch(1);
        final AtomicBoolean failed = new AtomicBoolean();
        streams.setStateListener((now, before) -> {
            if (now == KafkaStreams.State.ERROR) {
                failed.set(true);
                done.countDown();
            }
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close(Duration.ofSeconds(30));
            done.countDown();
        }, "page-view-stats-shutdown"));
        streams.start();
        done.await();
        if (failed.get()) {
            System.err.println("page-view-stats: Kafka Streams failed, state ERROR");
            System.exit(1);
        }
    }
}
