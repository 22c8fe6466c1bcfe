# Sourced by the snapshot benches.

# Publishes ARCHIVE (with ARCHIVE.prices.csv beside it) with EOD to fresh topics PREFIX.*, and
# sets `topics` to the flags that name them.
publish_to_fresh_topics() {
    local eod="$1" prefix="$2" archive="$3"
    topics=(--brokers "$EOD_KAFKA_BROKERS" --trades-topic "$prefix.raw" --dlq-topic "$prefix.dlq"
        --prices-topic "$prefix.prices" --reference-topic "$prefix.ref")
    "$eod" ingest --archive "$archive" --prices "$archive.prices.csv" "${topics[@]}" \
        --create-topics | grep -E '^(trades|delivered|elapsed)'
}

# Waits until the live `eod run` serving on 127.0.0.1:$1 has
# caught up (nothing more read in 2 s) and its books too (no epoch waits for them), then one
# more cut (5 s at the benches' interval) for a snapshot of it all.
wait_for_a_snapshot_of_everything() {
    local port="$1" previous=-1 now
    metric() {
        curl -sf "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {print $2}'
    }
    until curl -sf "http://127.0.0.1:$port/v1/pnl/firm" >/dev/null 2>&1; do sleep 0.5; done
    while :; do
        sleep 2
        now=$(metric eod_messages_read_total)
        [ "$now" = "$previous" ] && [ "$(metric eod_dataflow_epochs_not_durable)" -le 2 ] && break
        previous=$now
    done
    sleep 7
}
