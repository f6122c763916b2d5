/* C reference implementation of the seed writer/reader, written from the
 * contract in design.md section 1. It behaves as the original does,
 * including its unsafe corners: ftok errors are ignored (key 0xffffffff),
 * the input line is not bounded, the reader's scan is not bounded.
 *
 * Options (not in the original; the defaults are the original's values) let
 * scenarios that vary the key or size run against this implementation too:
 *   --key-file PATH  --proj-id N  --key HEX  --size N  --mode OCTAL
 *   --exclusive (writer)  --keep (reader)
 */
#ifndef SHMCONF_REFERENCE_COMMON_H
#define SHMCONF_REFERENCE_COMMON_H

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/types.h>

struct options {
    const char *key_file;
    int proj_id;
    int have_key;
    key_t key;
    size_t size;
    int mode;
    int exclusive;
    int keep;
};

static void parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"key-file", required_argument, 0, 'f'}, {"proj-id", required_argument, 0, 'p'},
        {"key", required_argument, 0, 'k'},      {"size", required_argument, 0, 's'},
        {"mode", required_argument, 0, 'm'},     {"exclusive", no_argument, 0, 'x'},
        {"keep", no_argument, 0, 'K'},           {0, 0, 0, 0},
    };
    int c;
    o->key_file = "shmfile";
    o->proj_id = 65;
    o->have_key = 0;
    o->size = 1024;
    o->mode = 0666;
    o->exclusive = 0;
    o->keep = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': o->key_file = optarg; break;
        case 'p': o->proj_id = atoi(optarg); break;
        case 'k': o->have_key = 1; o->key = (key_t)strtoul(optarg, NULL, 16); break;
        case 's': o->size = strtoul(optarg, NULL, 10); break;
        case 'm': o->mode = (int)strtol(optarg, NULL, 8); break;
        case 'x': o->exclusive = 1; break;
        case 'K': o->keep = 1; break;
        default: exit(2);
        }
    }
}

/* As the original: the result of ftok is used unchecked. */
static key_t option_key(const struct options *o)
{
    return o->have_key ? o->key : ftok(o->key_file, o->proj_id);
}

#endif
