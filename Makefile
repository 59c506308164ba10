.PHONY: install demo test bench image
install:        ## install hpt into ./.venv
	scripts/setup.sh
demo: install   ## the main job on the embedded default: demo data, quick plan, local run, results
	scripts/demo.sh
test:           ## install everything, start the services, run every test
	scripts/test.sh
image:          ## build the trainer image offline
	images/build-offline.sh
