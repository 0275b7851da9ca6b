/* hash_instr.c: hash_instr.rs's workload on DPDK's rte_hash (a table without its lock
 * flags, as hash_perf_autotest's "without locks"), for scripts/bench hash-instr:
 * hash_instr [EAL options] -- MODE PASSES KEY_LEN. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rte_eal.h>
#include <rte_hash.h>
#include <rte_jhash.h>

#define ENTRIES (1u << 16)
#define BURST 16

static void die(const char *what)
{
	fprintf(stderr, "hash_instr: %s\n", what);
	exit(2);
}

int main(int argc, char **argv)
{
	int used = rte_eal_init(argc, argv);
	if (used < 0)
		die("EAL init failed");
	argc -= used;
	argv += used;
	if (argc != 4)
		die("usage: hash_instr [EAL options] -- MODE PASSES KEY_LEN");
	const char *mode = argv[1];
	int passes = atoi(argv[2]);
	unsigned len = (unsigned)atoi(argv[3]);
	if (len < 4 || len > 256)
		die("KEY_LEN: 4 to 256");
	struct rte_hash_parameters p = {
		.name = "hash_instr", .entries = ENTRIES, .key_len = len,
		.hash_func = rte_jhash, .hash_func_init_val = 0, .socket_id = 0,
	};
	struct rte_hash *h = rte_hash_create(&p);
	if (h == NULL)
		die("rte_hash_create failed");
	unsigned want = ENTRIES / 4 * 3, n = 0;
	uint8_t *keys = calloc(want, len);
	hash_sig_t *hashes = calloc(want, sizeof(*hashes));
	if (keys == NULL || hashes == NULL)
		die("no memory");
	for (unsigned i = 0; i < want; i++) {
		uint8_t *k = keys + (size_t)n * len;
		uint32_t count = i * 2654435761u;
		memcpy(k, &count, 4);
		k[len - 1] = (uint8_t)i;
		if (rte_hash_add_key_data(h, k, (void *)(uintptr_t)(i + 1)) >= 0)
			hashes[n++] = rte_hash_hash(h, k);
	}
	uint64_t hits = 0, mask;
	void *data[BURST];
	const void *burst[BURST];
	for (int pass = 0; pass < passes; pass++) {
		if (strcmp(mode, "lookup") == 0) {
			for (unsigned i = 0; i < n; i++)
				hits += rte_hash_lookup_data(h, keys + (size_t)i * len, data) >= 0;
		} else if (strcmp(mode, "lookup-hash") == 0) {
			for (unsigned i = 0; i < n; i++)
				hits += rte_hash_lookup_with_hash_data(h, keys + (size_t)i * len,
								       hashes[i], data) >= 0;
		} else if (strcmp(mode, "bulk") == 0 || strcmp(mode, "bulk-hash") == 0) {
			for (unsigned i = 0; i + BURST <= n; i += BURST) {
				for (int j = 0; j < BURST; j++)
					burst[j] = keys + (size_t)(i + j) * len;
				if (mode[4] == '\0')
					rte_hash_lookup_bulk_data(h, burst, BURST, &mask, data);
				else
					rte_hash_lookup_with_hash_bulk_data(h, burst, hashes + i,
									    BURST, &mask, data);
				hits += (uint64_t)__builtin_popcountll(mask);
			}
		} else if (strcmp(mode, "del-add-hash") == 0) {
			for (unsigned i = 0; i < n; i++)
				rte_hash_del_key_with_hash(h, keys + (size_t)i * len, hashes[i]);
			for (unsigned i = 0; i < n; i++)
				hits += rte_hash_add_key_with_hash_data(h, keys + (size_t)i * len,
						hashes[i], (void *)(uintptr_t)(i + 1)) >= 0;
		} else {
			die("no such mode: lookup, lookup-hash, bulk, bulk-hash or del-add-hash");
		}
	}
	printf("keys %u hits %llu\n", n, (unsigned long long)hits);
	rte_hash_free(h);
	rte_eal_cleanup();
	return 0;
}
