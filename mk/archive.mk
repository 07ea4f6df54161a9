# Importing OKX's daily trade archives (issue 16) into the running `make up` stack, through
# its Kafka (KAFKA_BOOTSTRAP_SERVERS, default localhost:9092; topic KAFKA_TOPIC, default trades).
# Included by the main Makefile, which defines PY.
#
#   make import-archive FILES='BTC-USDT-trades-2024-01-01.zip archives/ https://.../x.zip'
#   make import-archive FILES=archives/ IMPORT_SYMBOLS=BTC-USDT,ETH-USDT DRY_RUN=1

.PHONY: import-archive

import-archive: venv ## import OKX daily trade files into the running stack (FILES=paths/dirs/URLs, IMPORT_SYMBOLS=, DRY_RUN=1)
	@test -n "$(FILES)" || { echo "usage: make import-archive FILES='<zip/csv files, directories or URLs>' [IMPORT_SYMBOLS=BTC-USDT,...] [DRY_RUN=1]" >&2; exit 2; }
	$(PY) -m gostream.producer.archive $(FILES) $(if $(IMPORT_SYMBOLS),--symbols $(IMPORT_SYMBOLS)) $(if $(DRY_RUN),--dry-run)
