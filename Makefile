# The two commands. Both install whatever is missing first (scripts/install.sh).
.PHONY: run test install cluster

# The IP-to-country database that scripts/install.sh fetches (override with LETSMEET_GEOIP_DB).
GEOIP_DB ?= node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb

## Serve the app on its embedded default: one node, in memory, http://127.0.0.1:3000,
## moderated by the open_nsfw model that scripts/install.sh fetched
run: install
	LETSMEET_GEOIP_DB="$${LETSMEET_GEOIP_DB:-$(GEOIP_DB)}" LETSMEET_MODERATION="$${LETSMEET_MODERATION:-model}" \
	  cargo leptos serve --release

## Run every check and test (what CI runs)
test:
	./scripts/test.sh

install:
	./scripts/install.sh

## A local cluster on loopback: redis, three nodes, two matchers, HAProxy, coturn
cluster:
	./scripts/cluster.sh
