# Debian packages (DESIGN §6): sockwarden, libsockwarden0, libsockwarden-dev.
# Included by the top-level Makefile.
#
#   make deb        build the three .debs into $(OUTPUT)/deb/ (about a minute)
#   make lintian    lintian on them: any warning or error fails
#   make deb-test   deb + lintian + the packages' contents and the tmpfiles.d
#                   snippet checked (tests/deb/)
#   make deb-upgrade  the same packages as version $(DEB_UPGRADE_VERSION), in
#                   $(OUTPUT)/deb/upgrade/: what an upgrade test installs over them
#
# dpkg-buildpackage writes its results next to the source tree, so the tree
# is exported (tracked and untracked-but-not-ignored files, as they are in the
# work tree now: uncommitted changes included; a deleted file stays out;
# debian/.gitignore keeps an in-tree package build's leftovers out) to
# $(OUTPUT)/deb/src/sockwarden-$(VERSION)/ and built there; nothing lands in
# the repo's parent directory, and the package build (OUTPUT=debian/build in
# the copy) never touches this tree's $(OUTPUT).

DEPS += debhelper dpkg-dev fakeroot lintian

DEB_DIR := $(OUTPUT)/deb
DEB_ARCH = $(shell dpkg --print-architecture)
DEB_UPGRADE_VERSION := $(VERSION)+upgrade1
DEB_JOBS = $(shell nproc)

# deb-build,VERSION,DIR: export the tree, build it as VERSION (prepending a
# changelog entry when VERSION is not the changelog's), move the results to DIR.
define deb-build
	$(Q)rm -rf $(2)/src && mkdir -p $(2)/src/sockwarden-$(1)
	$(Q)rm -f $(2)/*.deb $(2)/*.changes $(2)/*.buildinfo
	$(Q)git ls-files -z --cached --others --exclude-standard --deduplicate | \
		perl -0 -ne 'chomp; print "$$_\0" if -e $$_ || -l $$_' | \
		tar -c --null -T - -f - | tar -x -C $(2)/src/sockwarden-$(1) -f -
	$(Q)test -x $(2)/src/sockwarden-$(1)/debian/rules || \
		{ echo "deb: exporting the tree to $(2)/src/sockwarden-$(1) failed"; exit 1; }
	$(Q)if [ "$(1)" != "$$(dpkg-parsechangelog -l debian/changelog -S Version)" ]; then \
		{ printf 'sockwarden (%s) unstable; urgency=medium\n\n  * Rebuild as %s, for upgrade tests.\n\n -- %s  %s\n\n' \
			"$(1)" "$(1)" "$$(dpkg-parsechangelog -l debian/changelog -S Maintainer)" \
			"$$(date -R)"; cat debian/changelog; } > $(2)/src/sockwarden-$(1)/debian/changelog; \
	fi
	$(call msg,DPKG-BP,$(2)/src/sockwarden-$(1))
	$(Q)cd $(2)/src/sockwarden-$(1) && DEB_BUILD_OPTIONS="parallel=$(DEB_JOBS)" \
		dpkg-buildpackage -us -uc -b > ../build.log 2>&1 || \
		{ tail -40 ../build.log; echo "dpkg-buildpackage failed: see $(2)/src/build.log"; exit 1; }
	$(Q)mv $(2)/src/*.deb $(2)/src/*.changes $(2)/src/*.buildinfo $(2)/
	$(Q)ls $(2)/*.deb | sed 's/^/  DEB      /'
endef

.PHONY: deb lintian deb-test deb-upgrade deb-version-check

# The package's version is the Makefile's VERSION: a release bumps both.
deb-version-check:
	$(Q)v=$$(dpkg-parsechangelog -l debian/changelog -S Version); \
	if [ "$$v" != "$(VERSION)" ]; then \
		echo "debian/changelog is at $$v, the Makefile's VERSION is $(VERSION): add a changelog entry"; \
		exit 1; \
	fi

deb: deps deb-version-check
	$(call deb-build,$(VERSION),$(DEB_DIR))

deb-upgrade: deps deb-version-check
	$(call deb-build,$(DEB_UPGRADE_VERSION),$(DEB_DIR)/upgrade)

# The .changes names the three .debs and the .buildinfo: lintian checks all.
lintian: deb
	$(call msg,LINTIAN,$(DEB_DIR)/sockwarden_$(VERSION)_$(DEB_ARCH).changes)
	$(Q)lintian --fail-on error,warning --display-info \
		$(DEB_DIR)/sockwarden_$(VERSION)_$(DEB_ARCH).changes

deb-test: deb lintian
	$(Q)tests/deb/check_contents.sh $(DEB_DIR) $(VERSION) $(DEB_ARCH)
	$(Q)tests/deb/check_tmpfiles.sh dist/tmpfiles.d/sockwarden.conf
