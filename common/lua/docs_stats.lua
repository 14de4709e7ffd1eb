-- An atomic snapshot of the docs queue: {queued-list, in flight, dead, counts-flat}.
return {
  redis.call('LLEN', K_DOCS),
  redis.call('ZCARD', K_DOCS_INFLIGHT),
  redis.call('LLEN', K_DOCS_DEAD),
  redis.call('HGETALL', K_COUNTS),
}
